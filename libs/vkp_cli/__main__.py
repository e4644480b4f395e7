from vkp_cli.main import app

app()
