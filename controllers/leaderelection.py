"""Leader election lives in :mod:`apimachinery.leaderelection`, shared with the scheduler."""

from apimachinery.leaderelection import LeaderElector, LostLeadership, default_identity

__all__ = ["LeaderElector", "LostLeadership", "default_identity"]
