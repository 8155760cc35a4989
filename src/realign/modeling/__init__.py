"""Language models as every stage uses them: where they come from, how they are loaded, and how
text becomes their token sequences.

* :mod:`.sources` — a model's folder (a local path, or a hub id's cached snapshot), checked
  without loading, and its fingerprint;
* :mod:`.loading` — models, tokenizers and LoRA adapters loaded onto a device, safely (safetensors
  only, no remote code unless asked for);
* :mod:`.chat` — a chat rendered as the model's prompt, its messages' contents encoded as text;
* :mod:`.sequences` — (prompt, response) as token sequences, the one formatting every stage
  shares, with the input budgets and padding;
* :mod:`.packaged` — small real models shipped inside PyPI packages (``realign models prepare``).
"""
