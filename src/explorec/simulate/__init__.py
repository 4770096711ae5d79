"""Simulated users built from real ratings, for judging exploration policies online."""

from explorec.simulate.environment import Environment, build_environment
from explorec.simulate.runner import SimulationResult, fit_base_model, make_policy, run_policy, simulate

__all__ = ["Environment", "SimulationResult", "build_environment", "fit_base_model", "make_policy",
           "run_policy", "simulate"]
