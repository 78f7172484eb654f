"""Zhixun (智询): composition root — settings, command line and app wiring."""
