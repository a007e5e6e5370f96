"""The embedded world: a digits pool and six benchmark-shaped evaluation sets built from real handwritten digits
(scikit-learn ships them), and the recipe that builds its tiny pretrained parts (tokenizer, target and proxy base,
CLIP), which ship in pretrained/. The general pipeline reaches it only through registries keyed by config
(data source "embedded", base-model builder "digits_recipe", CLIP builder "digits_recipe")."""
