"""Text -> vocabulary -> pretraining examples: the data half of the pipeline.

Takes what a user holds (plain text, MEDLINE/PubMed XML, PubTator, or nothing: ``data download``
fetches PubMed and BLURB) and gives out a WordPiece vocabulary directory and sharded pretraining
examples with a manifest, ready for :mod:`domainbert.train`.

===================  =============================================================================
module               job
===================  =============================================================================
``sources``          what can be fetched (the catalogue, ``sources.toml``) and where the cache is
``download``         fetching it: resumable, verified, atomic (``domainbert data download``)
``corpus``           reading every corpus format into documents, sentence splitting
``filters``          which documents pretraining may use: length, language, duplicates, decontamination
``vocab``            training the in-domain WordPiece vocabulary (``domainbert vocab build``)
``tokenization``     ``BertTokenizer``: any BERT vocabulary directory, ids equal to transformers'
``examples``         the reference recipe: NSP segment pairs and 80/10/10 masked-LM predictions
``shards``           writing examples to shards + manifest in parallel (``domainbert data prepare``)
``loader``           reading shards back as model inputs, in one documented order
===================  =============================================================================
"""
