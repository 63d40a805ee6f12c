"""The dashboard's tables (defined in :mod:`livesync.demo.models`)."""

from livesync.demo.models import Alert, Base, KpiDay, KpiSecond, Order

__all__ = ["Alert", "Base", "KpiDay", "KpiSecond", "Order"]
