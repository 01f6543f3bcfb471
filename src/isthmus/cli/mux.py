"""`isthmus mux routes`: the old name of `isthmus lab mux-routes`, kept hidden so scripts using it still work."""

from __future__ import annotations

import typer

from isthmus.cli.lab import mux_routes

mux_app = typer.Typer(help="Old name: see `isthmus lab mux-routes`.", no_args_is_help=True, hidden=True)
mux_app.command("routes", help="The same as `isthmus lab mux-routes`.")(mux_routes)
