"""Online alignment: PLE, RAFT, online RRHF, RLOO and PPO in one generate -> score -> train loop.

Modules: `config` (options of the verbs, `PPOSettings`), `samples` (scored samples, the
`Strategy` interface and its defaults), one module per method: `ple`, `ranked` (RAFT, RRHF),
`rloo`, `ppo`; `rollout` (the RL scorer with a value head, the reference, the `Rollout` value
RLOO and PPO compute before their optimizer steps), `principles` (PLE's principle prompts),
`policy` (start model and initial SFT), `evaluation` (held-out reward) and `loop`
(`OnlineTrainer`). Kept import-free so that `alignkit --help` does not load the training stack.
"""
