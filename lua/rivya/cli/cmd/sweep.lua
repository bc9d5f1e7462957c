--- rivya.cli.cmd.sweep: `rivya sweep`.
local errors = require "rivya.errors"
local cli_catalog = require "rivya.cli.catalog"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local request = require "rivya.cli.request"
local runner = require "rivya.cli.jobs"
local contact_sheet = require "rivya.cli.sheet"
local compat = require "rivya.compat"


local function command(ctx, a, specs)
  if a.concurrency < 1 then return ctx:usage("--concurrency must be at least 1") end
  local fixed, dims = flags.sweep_params_from_args(a, specs)
  if not fixed then return ctx:usage(dims) end
  local prompts = {}
  for i, p in ipairs(a.prompt) do prompts[i] = request.read_prompt(ctx, p) end
  if #prompts > 1 then table.insert(dims, 1, { name = "prompt", values = prompts }) end
  local count = 1
  for _, d in ipairs(dims) do count = count * #d.values end
  if count > util.MAX_VARIANTS then
    return ctx:usage(("the grid has %d variants; at most %d"):format(count, util.MAX_VARIANTS))
  end
  local model = a.model or flags.default_model()
  local width = math.max(2, #tostring(count))
  local jobs = {}
  for i = 1, count do
    -- the i-th combination, the last dimension varying fastest
    local values, picks, rest = {}, {}, i - 1
    for d = #dims, 1, -1 do
      local dim = dims[d]
      picks[d] = rest % #dim.values + 1
      values[dim.name] = dim.values[picks[d]]
      rest = compat.idiv(rest, #dim.values)
    end
    local params = util.shallow_copy(fixed)
    local name = { ("%0" .. width .. "d"):format(i) }
    for d, dim in ipairs(dims) do
      if dim.name == "prompt" then
        name[#name + 1] = "p" .. picks[d]
      else
        params[dim.name] = values[dim.name]
        name[#name + 1] = contact_sheet.slug((dim.name:gsub("_", "-"))) .. "-" .. contact_sheet.slug(values[dim.name])
      end
    end
    if a.ref and #a.ref > 0 then
      params.referenceMediaItems = {}
      for k, path in ipairs(a.ref) do params.referenceMediaItems[k] = path end
    end
    jobs[i] = { n = i, values = values, output_name = table.concat(name, "_") .. "." .. cli_catalog.expected_ext(model),
      req = { model = model, prompt = values.prompt or prompts[1], params = params } }
  end
  local prepared = runner.prepare(ctx, jobs, "variant")
  if prepared ~= true then return prepared end
  local out_dir = a.out_dir or "sweep"
  local function describe(job)
    local shown = {}
    for k, v in pairs(job.body.params or {}) do
      if k ~= "referenceMediaItems" then shown[k] = v end
    end
    return { params = shown, prompt = job.body.prompt }
  end
  local code = runner.run(ctx, a, jobs, { unit = "variants", unit_key = "variant", label = "variant",
    kind = "sweep", out_dir = out_dir, source = "sweep", describe = describe })
  if a.dry_run or not jobs[1].result then return code end

  local sheet = { prompts = prompts, dims = {}, model = model, variants = {}, credits = 0,
    generated = os.date("!%Y-%m-%d %H:%M UTC") }
  for _, d in ipairs(dims) do sheet.dims[#sheet.dims + 1] = d end
  for _, job in ipairs(jobs) do
    local r = job.result
    sheet.credits = sheet.credits + (r.task_id and job.credits or 0)
    local rows = {}
    if #prompts > 1 then rows[#rows + 1] = { "prompt", job.body.prompt } end
    for _, p in ipairs(specs) do
      local v = job.body.params and job.body.params[p.name]
      if v ~= nil then rows[#rows + 1] = { p.name, tostring(v) } end
    end
    for k, item in ipairs(job.body.params and job.body.params.referenceMediaItems or {}) do
      rows[#rows + 1] = { "reference " .. k, tostring(item.upload or item.name or item.url) }
    end
    local shown_values = {}
    for _, d in ipairs(dims) do
      shown_values[d.name] = d.name == "prompt" and job.body.prompt or job.body.params[d.name]
    end
    sheet.variants[#sheet.variants + 1] = { n = job.n, file = job.output_name, status = r.status,
      task_id = r.task_id, error = r.error and r.error.message, values = shown_values, rows = rows }
  end
  local index = util.join(out_dir, "index.html")
  local ok, err = contact_sheet.write(index, sheet)
  if not ok then return ctx:fail(errors.new("io", "cannot write " .. index .. ": " .. tostring(err))) end
  if a.json then
    ctx.status:note("contact sheet: " .. index)
  else
    ctx:out("contact sheet: " .. index)
  end
  return code
end

local function add_to_parser(parser, specs)
  local c = parser:command("sweep", "Render the grid of variations of a prompt, with an index.html contact sheet.")
  c:argument("prompt", "The prompt(s): several prompts are one more dimension."):args("+")
  flags.request_flags(c, specs, true)
  flags.runner_flags(c, "variants", "Videos, state file and index.html (default ./sweep).")
  return c
end

return { add_to_parser = add_to_parser, command = command }
