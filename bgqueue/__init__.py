"""bgqueue: blue/green switchovers for fleets of MySQL-family databases."""
__version__ = "0.1.0"
