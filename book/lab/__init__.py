"""Per chapter: ``book.lab.<chapter stem>`` holds the experiment plumbing of ``chapters/<stem>.ipynb``
(generated data, training runs, measurements, the chapter's own views, built on :mod:`book.ui`)."""
