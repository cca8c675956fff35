-- Module: Healthy once published in the catalogue with valid metadata
local ready = condition("Ready")
if ready == nil then return {status = "Progressing", message = "Waiting for the operator"} end
if ready.status ~= "True" then return {status = "Degraded", message = why(ready)} end
-- invalid metadata is published all the same, flagged: the user must fix spec.metadata
local valid = condition("MetadataValid")
if valid ~= nil and valid.status == "False" then return {status = "Degraded", message = why(valid)} end
return {status = "Healthy", message = ready.message or ""}
