"""The JSON API's blueprints, one per resource, registered on the flask-smorest ``Api``."""
