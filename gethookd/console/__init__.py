"""The operator console's static files (index.html and assets/), served by gethookd.api.console."""
