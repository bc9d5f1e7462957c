--- rivya.catalog: model catalogs compiled for the C validator.
-- A catalog (the documented objects of GET /api/v1/models) is compiled once
-- into a rivya.Catalog (C structures, src/catalog.c); validating a request
-- never walks the Lua tables again. The snapshot rivya ships serves the
-- offline helpers; a client compiles the live catalog it fetched.
local core = require "rivya.core"
local snapshot = require "rivya.catalog_snapshot"

local catalog = {}

--- A deep copy of plain data (callers may edit what they get).
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end
catalog.copy = copy

-- rivya's notes on the modes of the models the snapshot knows: id -> mode -> notes
local NOTES = {}
for _, m in ipairs(snapshot.models) do
  local modes = type(m.reference_media) == "table" and m.reference_media.modes or {}
  for _, mode in ipairs(modes) do
    if mode.rivya_notes then
      NOTES[m.id] = NOTES[m.id] or {}
      NOTES[m.id][mode.mode] = mode.rivya_notes
    end
  end
end

-- The models as the compiler should see them: a live model the snapshot
-- knows keeps rivya's notes on its modes (the live objects are not changed).
local function with_notes(models)
  local out = {}
  for i, m in ipairs(models) do
    local notes = type(m) == "table" and NOTES[m.id]
    local rm = notes and m.reference_media
    if type(rm) == "table" and type(rm.modes) == "table" then
      local view, rview, modes = {}, {}, {}
      for k, v in pairs(m) do view[k] = v end
      for k, v in pairs(rm) do rview[k] = v end
      for j, mode in ipairs(rm.modes) do
        if type(mode) == "table" and mode.rivya_notes == nil and notes[mode.mode] then
          local mv = {}
          for k, v in pairs(mode) do mv[k] = v end
          mv.rivya_notes = notes[mode.mode]
          mode = mv
        end
        modes[j] = mode
      end
      rview.modes = modes
      view.reference_media = rview
      m = view
    end
    out[i] = m
  end
  return out
end

--- Compile an array of catalog model objects into a rivya.Catalog.
function catalog.compile(models)
  return core.catalog(with_notes(models), snapshot.files_defaults)
end

local compiled
--- The compiled snapshot (compiled on first use, then shared).
function catalog.snapshot()
  compiled = compiled or core.catalog(snapshot.models, snapshot.files_defaults)
  return compiled
end

--- The snapshot's model objects: fresh tables on each call.
function catalog.snapshot_models()
  return copy(snapshot.models)
end

return catalog
