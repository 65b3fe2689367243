from hpscape.service.cli import app

app()
