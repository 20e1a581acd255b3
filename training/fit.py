"""The fitting code lives in the package (`octoroute.routing.fitting`), shared with
`octoroute train`; the training scripts import it from here."""

from octoroute.routing.fitting import (
    LENGTH_FEATURES,
    Featurized,
    Fitted,
    Settings,
    export,
    featurize,
    fit,
    target_of,
)

__all__ = ["LENGTH_FEATURES", "Featurized", "Fitted", "Settings", "export", "featurize", "fit", "target_of"]
