"""``groundedit train``: InterCoG fine-tuning of our lean Bagel on exported shards (paper §3.2).

Modules: ``spec`` (``stages/train.yaml``), ``examples`` / ``shards`` / ``bagel_parquet`` / ``t2i_parquet``
/ ``vlm_jsonl`` / ``data`` (the kinds of ``--data``, mixing, resumable position, skip reasons), ``sequence``
(InterCoG, plain-edit, text-to-image and understanding sequences, CFG dropout, packing), ``losses`` (pure loss functions), ``grounding`` (frozen SAM encoder, mask decoder,
projectors), ``objective`` (a pack's loss terms), ``checkpoint``, ``logbook`` and ``trainer`` (the loop).
Import from the modules (``from groundedit.train.trainer import train``); this package file stays light so
the CLI can name the errors without loading torch.
"""
