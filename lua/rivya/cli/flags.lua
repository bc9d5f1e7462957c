--- rivya.cli.flags: the parameter flags, generated from the model schemas
-- (rivya.models()), and the flags every command shares.
local rivya = require "rivya"
local util = require "rivya.cli.util"
local compat = require "rivya.compat"

local MAX_VARIANTS = util.MAX_VARIANTS

-- the flags of `models` (catalog objects; default the snapshot's)
local function param_specs(models)
  local seen, specs = {}, {}
  for _, model in ipairs(models or rivya.models()) do
    for _, p in ipairs(model.params or {}) do
      p.name = p.name or p.key        -- catalog objects name a param `key`
      if type(p.name) == "string" and not seen[p.name] then
        seen[p.name] = true
        specs[#specs + 1] = p
      end
    end
  end
  return specs
end

local function default_model()
  local models = rivya.models()
  return models[1] and models[1].id or "wan-2-7-video"
end

-- a select whose options are exactly "true" and "false": --name [BOOL] and --no-name
local function is_boolean(p)
  if p.type == "boolean" then return true end
  if p.type ~= "select" or type(p.options) ~= "table" or #p.options ~= 2 then return false end
  local set = { [p.options[1]] = true, [p.options[2]] = true }
  return set["true"] == true and set["false"] == true
end

local function flag_of(name) return "--" .. (name:gsub("_", "-")) end

local function first_sentence(s)
  if #s <= 60 then return s end
  return s:match("^(.-[.!?])%s") or s
end

local function param_help(p, list_mode)
  local h = first_sentence(p.description or p.name)
  if p.options then h = h .. (h:match("[.!?]$") and " " or ". ") .. "One of " .. table.concat(p.options, ", ") end
  if p.type == "number" then
    h = h .. (h:match("[.!?]$") and " " or ". ") .. ("%s %s..%s"):format(p.integer and "Integer" or "Number",
      tostring(p.min or "-inf"), tostring(p.max or "inf"))
  end
  if p.default then h = h .. " (service default " .. tostring(p.default) .. ")" end
  h = h .. "."
  if list_mode then
    h = h .. (p.type == "text" and " Repeat to sweep several values."
      or p.type == "number" and " A list and/or ranges: 1..4,7." or " A comma-separated list.")
  end
  return h
end

local function add_param_flags(cmd, specs, list_mode)
  for _, p in ipairs(specs) do
    local flag = flag_of(p.name)
    if is_boolean(p) then
      local o = cmd:option(flag, param_help(p, list_mode)):args("?"):argname("<true|false>")
      if list_mode then o:count("*") end
      cmd:flag("--no-" .. flag:sub(3), ("Same as %s false."):format(flag))
    else
      local argname = p.type == "number" and "<n>" or p.options and "<" .. table.concat(p.options, "|") .. ">"
        or "<text>"
      if list_mode and p.type ~= "text" then argname = "<list>" end
      if #argname > 24 then argname = "<value>" end
      local o = cmd:option(flag, param_help(p, list_mode)):argname(argname)
      if list_mode then o:count("*") end
    end
  end
end

local function to_param_value(p, v)
  if p.type == "number" then return compat.tointeger(tonumber(v)) or tonumber(v) or v end
  return v
end

--- params from single-valued flags | nil, message (usage)
local function params_from_args(a, specs)
  local params = {}
  for _, p in ipairs(specs) do
    local v = a[p.name]
    if is_boolean(p) then
      local no = a["no_" .. p.name]
      if no and v then
        return nil, ("%s and --no-%s contradict each other"):format(flag_of(p.name), flag_of(p.name):sub(3))
      end
      if no then params[p.name] = "false" elseif v then params[p.name] = v[1] or "true" end
    elseif v ~= nil then
      params[p.name] = to_param_value(p, v)
    end
  end
  return params
end

-- "1..4,7" -> {1,2,3,4,7} for numbers; "5,10" -> {"5","10"}; text as given
local function expand_values(p, given)
  local values = {}
  for _, s in ipairs(given) do
    if p.type == "text" then
      values[#values + 1] = s
    else
      for item in (s .. ","):gmatch("([^,]*),") do
        item = item:match("^%s*(.-)%s*$")
        local lo, hi = item:match("^(%-?%d+)%.%.(%-?%d+)$")
        if lo and p.type == "number" then
          lo, hi = compat.tointeger(tonumber(lo)), compat.tointeger(tonumber(hi))
          if not lo or not hi or hi < lo or hi - lo >= MAX_VARIANTS then
            return nil, ("%s: %s is not an ascending range of at most %d values"):format(flag_of(p.name), item,
              MAX_VARIANTS)
          end
          for x = lo, hi do values[#values + 1] = x end
        elseif item == "" then
          return nil, ("%s: empty value in %q"):format(flag_of(p.name), s)
        else
          values[#values + 1] = to_param_value(p, item)
        end
      end
    end
  end
  return values
end

--- for sweep: fixed params and the swept dimensions {name=, values=}
local function sweep_params_from_args(a, specs)
  local fixed, dims = {}, {}
  for _, p in ipairs(specs) do
    local given = {}
    if is_boolean(p) then
      for _, v in ipairs(a[p.name] or {}) do given[#given + 1] = v[1] or "true" end
      if a["no_" .. p.name] then given[#given + 1] = "false" end
    else
      for _, v in ipairs(a[p.name] or {}) do given[#given + 1] = v end
    end
    if #given > 0 then
      local values, err = expand_values(p, given)
      if not values then return nil, err end
      if #values == 1 then
        fixed[p.name] = values[1]
      else
        dims[#dims + 1] = { name = p.name, values = values }
      end
    end
  end
  return fixed, dims
end

-- argparse converters that name their flag, what it takes and what was given
local function seconds_of(flag)
  return function(s)
    local n = tonumber(s)
    if not n or not (n > 0 and n < math.huge) then
      return nil, ("%s: expected a positive number of seconds, got '%s'"):format(flag, s)
    end
    return n
  end
end

local function whole_of(flag, least)
  return function(s)
    local n = compat.tointeger(tonumber(s))
    if not n or n < least then
      return nil, ("%s: expected a whole number of at least %d, got '%s'"):format(flag, least, s)
    end
    return n
  end
end

-- The options that take a value which may start with '-' (a negative
-- number): argparse would read "--seed -1" as an unknown option "-1".
local function value_flags(specs)
  local set = { ["--interval"] = true, ["--timeout"] = true, ["--count"] = true, ["-c"] = true,
    ["--concurrency"] = true, ["--model"] = true, ["--ref"] = true, ["-o"] = true, ["--out"] = true }
  for _, p in ipairs(specs) do
    if not is_boolean(p) then set[flag_of(p.name)] = true end
  end
  return set
end

--- argv with "--flag -1" written "--flag=-1" for the options that take a value.
local function join_negative(argv, specs)
  local set, out, i = value_flags(specs), {}, 1
  while i <= #argv do
    local v, nxt = argv[i], argv[i + 1]
    if v == "--" then
      for k = i, #argv do out[#out + 1] = argv[k] end
      break
    end
    if set[v] and nxt and nxt:match("^%-[%d.]") then
      out[#out + 1] = v .. "=" .. nxt
      i = i + 2
    else
      out[#out + 1] = v
      i = i + 1
    end
  end
  return out
end

local function common_flags(cmd, opts)
  opts = opts or {}
  cmd:flag("--json", "Print one JSON object per result on stdout.")
  cmd:flag("-q --quiet", "No progress on stderr (errors are still reported).")
  if opts.wait then
    cmd:option("--interval", "Seconds between status polls (default: RIVYA_POLL_INTERVAL or the documented pace).")
      :argname("<seconds>"):convert(seconds_of("--interval"))
    cmd:option("--timeout", "Give up waiting after this many seconds (default 900); the task keeps running.")
      :argname("<seconds>"):convert(seconds_of("--timeout"))
  end
end

-- what batch and sweep take: `units` names what they run ("lines", "variants")
local function runner_flags(cmd, units, out_dir_help)
  cmd:option("-c --concurrency", units:sub(1, 1):upper() .. units:sub(2) .. " in flight at once.", "4")
    :convert(whole_of("--concurrency", 1)):argname("<n>")
  cmd:option("-d --out-dir", out_dir_help):argname("<dir>")
  cmd:flag("--dry-run", "Validate, print the " .. units .. " and the total credits; send nothing.")
  cmd:flag("--retry-failed", "Run " .. units .. " whose task failed again (a new task, new credits).")
  cmd:flag("--allow-partial", "Start even when the balance cannot pay for every new task.")
  common_flags(cmd, { wait = true })
end

local function request_flags(cmd, specs, list_mode)
  cmd:option("--model", "Model id (default " .. default_model() .. ").")
  add_param_flags(cmd, specs, list_mode)
  cmd:option("--ref", "A reference: a local file (uploaded first), an uploaded file's id (file_...) "
    .. "or URL; repeat for two.")
    :argname("<file>"):count("*")
end


return {
  param_specs = param_specs,
  default_model = default_model,
  is_boolean = is_boolean,
  flag_of = flag_of,
  params_from_args = params_from_args,
  sweep_params_from_args = sweep_params_from_args,
  common_flags = common_flags,
  runner_flags = runner_flags,
  request_flags = request_flags,
  whole_of = whole_of,
  join_negative = join_negative,
}
