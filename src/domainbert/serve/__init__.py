"""Serving: a trained model directory in, predictions out, from Python, the command line and HTTP.

``inference`` (the predictors: ``FillMask``, ``Tagger``, ``Classifier``, ``Embedder``) ·
``commands`` (``fill-mask``, ``ner``, ``classify``, ``embed`` over files) · ``app`` (the FastAPI
service, ``domainbert serve``, and its web page ``page.html``).
"""
