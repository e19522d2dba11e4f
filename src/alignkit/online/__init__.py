"""Online alignment: PLE, RAFT and online RRHF in one generate -> score -> train loop.

Modules: `config` (options of the verbs), `queries` (query sets and their schedule),
`principles` (PLE's principle prompts), `generators` (HF / vLLM sampling backends),
`strategies` (what each method samples, builds and optimises), `policy` (start model and
initial SFT), `evaluation` (held-out reward) and `loop` (`OnlineTrainer`).
Kept import-free so that `alignkit --help` does not load the training stack.
"""
