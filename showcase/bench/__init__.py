"""A benchmark run, a process of its own when the app starts it.

    workload.py   the workload, its points, SLOs and the allowances of visitors and the trusted
    loadgen.py    the network side: exact prompts, requests, SSE, schedules, samplers
    metrics.py    the definitions: pure functions from raw timestamps to numbers and flags
    run.py        one run: points in order, progress, stop, the run folder and run.json
    child.py      a run in its own process: the job, typed messages, the child's cores
    agreement.py  our client beside vLLM's own `vllm bench serve` on the same server
"""
