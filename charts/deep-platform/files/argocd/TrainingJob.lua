-- TrainingJob: like Argo CD's own batch/Job check: running is Progressing, finished Healthy
local function condition(kind)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == kind then return c end
  end
  return nil
end
local function why(reason, message) return (reason or "") .. ": " .. (message or "") end
if obj.status == nil or obj.status.observedGeneration == nil then
  return {status = "Progressing", message = "Waiting for the operator"}
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  return {status = "Progressing", message = "Spec change not yet reconciled"}
end
local phase = obj.status.phase
if phase == "Failed" then return {status = "Degraded", message = why(obj.status.reason, obj.status.message)} end
if phase == "Succeeded" then return {status = "Healthy", message = why(obj.status.reason, obj.status.message)} end
-- Ready=False: the operator cannot run the Job as specified (InvalidSpec, ModuleNotFound,
-- Unschedulable GPU, storage, JobNameTaken, JobUpdateRejected...): only the user can fix it
local ready = condition("Ready")
if ready ~= nil and ready.status == "False" then return {status = "Degraded", message = why(ready.reason, ready.message)} end
if phase == "Suspended" then return {status = "Suspended", message = why(obj.status.reason, obj.status.message)} end
-- a pod that will not start by waiting (waiting for room, Unschedulable, is Progressing)
local stuck = {ImagePullBackOff = true, ErrImagePull = true, InvalidImageName = true,
  CreateContainerConfigError = true, CreateContainerError = true}
if phase == "Pending" and stuck[obj.status.reason or ""] then
  return {status = "Degraded", message = why(obj.status.reason, obj.status.message)}
end
-- Queued, Pending, Running, Restarting: work in progress
return {status = "Progressing", message = (phase or "") .. ", " .. why(obj.status.reason, obj.status.message)}
