"""The one cattrs converter used to (un)structure the project's attrs classes."""

import cattrs

converter = cattrs.Converter(omit_if_default=False)
