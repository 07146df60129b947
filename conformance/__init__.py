"""VerityDB conformance: proves an implementation equal to the specification.

- `verity_conformance.drivers`: one driver per machine for the spec and for
  `verity`, returning JSON observations (docs/conformance.md);
- `verity_conformance.kernel_machine`, `log_machine`, `tables_machine`,
  `sdk_machine`: the lockstep Hypothesis state machines, which `run` plays in
  seeded rounds (`verity_conformance._machines`);
- `verity_conformance.vectors`: vectors generated from the spec, and the runner;
- `python -m verity_conformance generate | run`: the command line.
"""
