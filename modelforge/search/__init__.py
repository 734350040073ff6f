"""`modelforge optimize`: search prune ratio x fine-tuning x precision x runtime for the model that meets a latency
goal at the least accuracy cost. One module per step: space (the axes), screen (latency before any training),
trials (fine-tuning as Ray Tune trials under ASHA), finalists (quantize the survivors, measure all interleaved),
choose (the winner), record (the report's `search` section), engine (the steps in order).

This layer sits between modelforge.run (which prepares the inputs, then ships the winner through the normal
runner) and the passes' engines it reuses; it imports nothing from run/ or cli/.
"""
