"""The HTTP API's routes, one router per concern; each declares the authentication it needs
(``deps.authorize``) and answers JSON described by its response models (see /docs)."""

from fastapi import APIRouter

from watchkeeper.server.routes import alerts, batches, health, models, suites

#: In the order /docs lists them.
ROUTERS: tuple[APIRouter, ...] = (batches.router, suites.router, models.router,
                                  alerts.router, health.router)

__all__ = ["ROUTERS"]
