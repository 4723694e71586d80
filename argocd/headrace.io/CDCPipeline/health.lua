-- Argo CD health check for headrace.io/CDCPipeline.
-- Install: argocd-cm key "resource.customizations.health.headrace.io_CDCPipeline" with this script.
-- The operator sets status.phase and the Ready/Progressing/Degraded conditions; this maps them.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Headrace operator to reconcile this pipeline"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "The operator has not processed generation " .. generation .. " yet"
  return hs
end

local conditions = obj.status.conditions
local ready = find(conditions, "Ready")
local degraded = find(conditions, "Degraded")
local progressing = find(conditions, "Progressing")
local phase = obj.status.phase

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "spec.paused is true"
  return hs
end

if phase == "Failed" or phase == "Degraded" then
  hs.status = "Degraded"
  if degraded ~= nil and degraded.message ~= nil then
    hs.message = degraded.reason .. ": " .. degraded.message
  else
    hs.message = "Pipeline is " .. phase
  end
  return hs
end

if phase == "Running" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Ready " .. (obj.status.readyNodes or "")
  return hs
end

if phase == "Snapshotting" then
  hs.status = "Progressing"
  hs.message = "Snapshot " .. (obj.status.snapshot or "starting") .. "; live changes flow"
  return hs
end

hs.status = "Progressing"
if progressing ~= nil and progressing.status == "True" and progressing.message ~= nil then
  hs.message = progressing.message
elseif ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Pipeline is " .. phase
end
return hs
