"""`isthmus mux routes`: what each MUX announces and what the ToR learned, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from isthmus.cli.lab import WORKDIR, lab_state
from isthmus.lab.mux_routes import collect

mux_app = typer.Typer(help="SLB MUX nodes: their BGP announcements.", no_args_is_help=True)
console = Console()


@mux_app.command("routes")
def routes(
    workdir: Path = WORKDIR,
    limit: int = typer.Option(50, min=0, help="Rows to print per table (the summary always counts every prefix)."),
    output: str = typer.Option("table", "--output", "-o"),
) -> None:
    """Per MUX: the desired count its agent reports, what its speaker announces, its session to the ToR; per
    public IP: which MUXes announce it, which the ToR learned it from, and the ToR's FIB next hops."""
    view = collect(lab_state(workdir))
    if output == "json":
        print(json.dumps(view.as_json(), indent=2))
        return
    summary = Table(title="MUX announcements")
    for column in ("mux", "address", "session to ToR", "desired (agent)", "announced (speaker)", "ToR learned"):
        summary.add_column(column)
    for mux in view.muxes:
        learned = sum(1 for peers in view.learned.values() if mux.name in peers)
        announced = f"[red]{mux.speaker} not answering[/red]" if mux.announced is None else str(len(mux.announced))
        summary.add_row(mux.name, mux.address, "Established" if mux.session else "[red]down[/red]",
                        "?" if mux.desired is None else str(mux.desired), f"{announced} ({mux.speaker})",
                        str(learned))  # fmt: skip
    console.print(summary)
    prefixes = view.prefixes()
    table = Table(title=f"public IPs ({len(prefixes)}; ToR FIB holds {len(view.fib)})")
    for column in ("prefix", "announced by", "ToR learned from", "ToR FIB next hops"):
        table.add_column(column)
    for prefix in prefixes[:limit]:
        by = [m.name for m in view.muxes if m.announced and prefix in m.announced]
        fib = view.fib.get(prefix, [])
        table.add_row(prefix, ", ".join(by) or "[red]none[/red]", ", ".join(view.learned.get(prefix, [])) or "-",
                      ", ".join(fib) or "[red]not installed[/red]")  # fmt: skip
    console.print(table)
    if len(prefixes) > limit:
        console.print(f"… {len(prefixes) - limit} more (--limit, or -o json)")
