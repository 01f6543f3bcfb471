from isthmus.cli.main import run

run()
