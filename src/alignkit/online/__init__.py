"""Online alignment: PLE, RAFT, online RRHF, RLOO and PPO in one generate -> score -> train loop.

Modules: `config` (options of the verbs), `queries` (query sets and their schedule),
`principles` (PLE's principle prompts), `generators` (HF / vLLM sampling backends), `remote`
(sampling from an OpenAI-compatible server), `strategies` (what each method samples, builds
and optimises), `rl` (RLOO and PPO: value head, rollout scoring), `policy` (start model and
initial SFT), `evaluation` (held-out reward) and `loop` (`OnlineTrainer`).
Kept import-free so that `alignkit --help` does not load the training stack.
"""
