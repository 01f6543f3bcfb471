from isthmus.cli.main import app

app(prog_name="isthmus")
