"""Stand-in for Aleph 4.1.6's `aleph.views` (only the sessions blueprint): written from the facts."""
from flask import Flask


def mount_app_blueprints(app: Flask) -> None:
    from aleph.views.sessions_api import blueprint

    app.register_blueprint(blueprint)
