--- rivya.cli.cmd.estimate: `rivya estimate`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local request = require "rivya.cli.request"
local runner = require "rivya.cli.jobs"

local EXIT = util.EXIT

local function command(ctx, a, specs)
  local total, runs = 0, 0
  if a.batch then
    local jobs, err, status = runner.read_batch(a.batch)
    if not jobs then
      if status == EXIT.usage then return ctx:usage(err) end
      return ctx:fail(err)
    end
    for _, job in ipairs(jobs) do
      local prepared, berr, credits = request.check(ctx, job.req, job.base_dir, true)
      if not prepared then return ctx:fail(berr, ("line %d: "):format(job.n), { line = job.n }) end
      total, runs = total + credits, runs + 1
    end
  else
    if not a.prompt then return ctx:usage("estimate needs a PROMPT (and flags), or --batch FILE.jsonl") end
    local req, uerr = request.from_args(ctx, a, specs)
    if not req then return ctx:usage(uerr) end
    local prepared, err, credits = request.check(ctx, req, nil, true)
    if not prepared then return ctx:fail(err) end
    runs = a.count
    total = credits * runs
  end
  if a.json then
    ctx:emit({ credits = total, runs = runs })
  else
    ctx:out(("%d credits (%d run%s)"):format(total, runs, runs == 1 and "" or "s"))
  end
  return EXIT.ok
end

local function add_to_parser(parser, specs)
  local c = parser:command("estimate", "Credits a run (or --count runs, or a batch) would reserve. Offline.")
  c:argument("prompt", "The prompt."):args("?")
  flags.request_flags(c, specs)
  c:option("--count", "Number of runs.", "1"):convert(flags.whole_of("--count", 1)):argname("<n>")
  c:option("--batch", "A batch file (JSONL) instead of a prompt."):argname("<file.jsonl>")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
