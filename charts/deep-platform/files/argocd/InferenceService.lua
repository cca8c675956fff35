-- InferenceService: Healthy when serving or scaled to zero on purpose (the activator wakes it)
local ready = condition("Ready")
if ready == nil then return {status = "Progressing", message = "Waiting for the operator"} end
if ready.status == "True" then return {status = "Healthy", message = why(ready)} end
-- on the way up; every other reason (CrashLoopBackOff, ImagePullBackOff, OOMKilled,
-- Unschedulable, ModuleNotFound, InvalidSpec, storage problems) does not heal by waiting
if ready.reason == "Starting" or ready.reason == "Prewarming" then return {status = "Progressing", message = why(ready)} end
return {status = "Degraded", message = why(ready)}
