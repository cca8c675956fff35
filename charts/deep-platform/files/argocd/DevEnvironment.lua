-- DevEnvironment: Healthy when ready or asleep on purpose (the activator wakes it on the next click)
local function condition(kind)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == kind then return c end
  end
  return nil
end
local function why(c) return (c.reason or "") .. ": " .. (c.message or "") end
if obj.status == nil or obj.status.observedGeneration == nil then
  return {status = "Progressing", message = "Waiting for the operator"}
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  return {status = "Progressing", message = "Spec change not yet reconciled"}
end
local ready = condition("Ready")
if ready == nil then return {status = "Progressing", message = "Waiting for the operator"} end
if ready.status == "True" then return {status = "Healthy", message = why(ready)} end
if ready.reason == "Starting" then return {status = "Progressing", message = why(ready)} end
-- NameTaken, ModuleNotFound, InvalidSpec, CrashLoopBackOff, storage problems: only the user fixes them
return {status = "Degraded", message = why(ready)}
