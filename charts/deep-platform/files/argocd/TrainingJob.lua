-- TrainingJob: like Argo CD's own batch/Job check: running is Progressing, finished Healthy
local phase = obj.status.phase
if phase == "Failed" then return {status = "Degraded", message = why(obj.status)} end
if phase == "Succeeded" then return {status = "Healthy", message = why(obj.status)} end
-- Ready=False: the operator cannot run the Job as specified (InvalidSpec, ModuleNotFound,
-- Unschedulable GPU, storage, JobNameTaken, JobUpdateRejected...): only the user can fix it
local ready = condition("Ready")
if ready ~= nil and ready.status == "False" then return {status = "Degraded", message = why(ready)} end
if phase == "Suspended" then return {status = "Suspended", message = why(obj.status)} end
-- a pod that will not start by waiting (waiting for room, Unschedulable, is Progressing)
local stuck = {ImagePullBackOff = true, ErrImagePull = true, InvalidImageName = true,
  CreateContainerConfigError = true, CreateContainerError = true}
if phase == "Pending" and stuck[obj.status.reason or ""] then
  return {status = "Degraded", message = why(obj.status)}
end
-- Queued, Pending, Running, Restarting: work in progress
return {status = "Progressing", message = (phase or "") .. ", " .. why(obj.status)}
