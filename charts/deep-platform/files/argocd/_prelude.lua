-- deep-platform: nothing to judge before the operator has reconciled the current spec
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
