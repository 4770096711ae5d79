"""Simulated users built from real ratings, for judging exploration policies online."""

from explorec.simulate.dynamics import (
    DynamicsParams,
    InterestDynamics,
    calibrate_from_ratings,
    kmeans_item_clusters,
)
from explorec.simulate.environment import Environment, build_environment
from explorec.simulate.runner import SimulationResult, fit_base_model, make_policy, run_policy, simulate

__all__ = ["DynamicsParams", "Environment", "InterestDynamics", "SimulationResult", "build_environment",
           "calibrate_from_ratings", "fit_base_model", "kmeans_item_clusters", "make_policy",
           "run_policy", "simulate"]
