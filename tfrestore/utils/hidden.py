"""A holder that keeps frozen networks out of Keras saving.

Keras 3's ``saving_lib`` walks every attribute of ``model.loss`` reachable through
``dir()``: a frozen VGG/ResNet/UNet stored on a loss would be written into every
checkpoint (59 MB for VGG16) and would make ``load_weights`` of a generator-only
file fail. An object that is neither ``KerasSaveable`` nor a list/dict/tuple is
skipped, so losses keep their frozen networks in a :class:`Hidden`.

Never expose the wrapped value through a ``@property``: ``saving_lib`` uses
``getattr`` and would follow it.
"""


class Hidden:
    """Opaque box: ``Hidden(model).value`` is ``model``; invisible to saving."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Hidden({type(self.value).__name__})"
