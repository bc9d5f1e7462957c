--- rivya.cli.cmd.batch: `rivya batch`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local runner = require "rivya.cli.jobs"

local EXIT = util.EXIT

local function command(ctx, a)
  if a.concurrency < 1 then return ctx:usage("--concurrency must be at least 1") end
  local jobs, err, status = runner.read_batch(a.file, { lean = true })
  if not jobs then
    if status == EXIT.usage then return ctx:usage(err) end
    return ctx:fail(err)
  end
  local prepared = runner.prepare(ctx, jobs, "line")
  if prepared ~= true then return prepared end
  local out_dir = a.out_dir or (a.file:gsub("%.jsonl?$", "") .. ".out")
  return runner.run(ctx, a, jobs, { unit = "lines", unit_key = "line", label = "line", kind = "batch",
    out_dir = out_dir, source = a.file })
end

local function add_to_parser(parser)
  local c = parser:command("batch", "Run the requests of a JSONL file together; re-run to resume.")
  c:argument("file", "One request object per line: {\"prompt\":..., \"params\":{...}, \"output\":\"name.mp4\"}.")
  flags.runner_flags(c, "lines", "Videos and their ledger, DIR/.rivya (default FILE.out).")
  return c
end

return { add_to_parser = add_to_parser, command = command }
