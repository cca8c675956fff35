-- DevEnvironment: Healthy when ready or asleep on purpose (the activator wakes it on the next click)
local ready = condition("Ready")
if ready == nil then return {status = "Progressing", message = "Waiting for the operator"} end
if ready.status == "True" then return {status = "Healthy", message = why(ready)} end
if ready.reason == "Starting" then return {status = "Progressing", message = why(ready)} end
-- NameTaken, ModuleNotFound, InvalidSpec, CrashLoopBackOff, storage problems: only the user fixes them
return {status = "Degraded", message = why(ready)}
