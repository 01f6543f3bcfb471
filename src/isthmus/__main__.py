import sys

if sys.argv[1:2] == ["agent"]:  # a node's agent: only its commands, not the whole CLI's imports (cli/entry.py)
    from isthmus.cli.agent import agent_app
    from isthmus.cli.entry import run_app

    run_app(agent_app, sys.argv[2:], "isthmus agent")
else:
    from isthmus.cli.main import run

    run()
