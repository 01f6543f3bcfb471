import sys

if sys.argv[1:2] == ["agent"]:  # a node's agent: only its commands (cli/agent.py), not the whole CLI's imports
    # httpx's own command line (httpx._main: click, rich, pygments) is no use to an agent and costs ~1 s of
    # imports in a TCG guest: a None in sys.modules makes httpx's `from ._main import main` fail, and httpx
    # then defines a stub `main` instead.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from isthmus.cli.agent import main

    main(sys.argv[2:])
else:
    from isthmus.cli.main import run

    run()
