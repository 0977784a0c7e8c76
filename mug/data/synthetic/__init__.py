"""The synthetic web corpus: scenes and captions (synth), the corpus in img2dataset's layout (corpus), its shards
(shards). dvc.yaml's synthesize stage depends on these three files."""
