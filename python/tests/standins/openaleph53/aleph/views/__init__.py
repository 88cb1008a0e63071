"""Stand-in for OpenAleph 5.3's `aleph.views` (only the sessions blueprint): written from the facts."""
from flask import Flask

# As in both lines: the package re-exports each view module's blueprint under the module's own
# name. So `import aleph.views.sessions_api as x` (and `from aleph.views import sessions_api`)
# gives the Blueprint, not the module; only sys.modules / importlib.import_module give the module.
from aleph.views.sessions_api import blueprint as sessions_api  # noqa: E402


def mount_app_blueprints(app: Flask) -> None:
    app.register_blueprint(sessions_api)
