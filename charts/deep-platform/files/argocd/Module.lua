-- Module: Healthy once published in the catalogue with valid metadata
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
if ready.status ~= "True" then return {status = "Degraded", message = why(ready)} end
-- invalid metadata is published all the same, flagged: the user must fix spec.metadata
local valid = condition("MetadataValid")
if valid ~= nil and valid.status == "False" then return {status = "Degraded", message = why(valid)} end
return {status = "Healthy", message = ready.message or ""}
