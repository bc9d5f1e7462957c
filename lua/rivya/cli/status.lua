--- rivya.cli.status: the progress display on stderr — one live line on a
-- terminal, plain `rivya: ...` lines otherwise, nothing with --quiet.
-- Results go to stdout, never here.
local core = require "rivya.core"
local util = require "rivya.cli.util"

local clock = util.clock

local Status = {}
Status.__index = Status

local function new(stream, mode, width)
  return setmetatable({ stream = stream, mode = mode, shown = false, started = core.now(),
    last = -1, width = width or 80 }, Status)
end

function Status:elapsed()
  return clock(core.now() - self.started)
end

--- Redraw the live line (terminal only), at most 10 times a second unless forced.
function Status:redraw(force)
  if self.mode ~= "tty" or not self.render then return end
  local t = core.now()
  if not force and t - self.last < 0.1 then return end
  self.last = t
  local line = self.render(self)
  if #line > self.width - 1 then
    -- one terminal row, or \r would not return to its start; no half UTF-8 sequence
    line = line:sub(1, self.width - 1):gsub("[\192-\255][\128-\191]*$", "")
  end
  self.stream:write("\r\27[K", line)
  self.stream:flush()
  self.shown = true
end

function Status:clear()
  if self.shown then
    self.stream:write("\r\27[K")
    self.stream:flush()
    self.shown = false
  end
end

--- An event: a plain line when not on a terminal (the live line shows it otherwise).
function Status:event(line)
  if self.mode == "plain" then self.stream:write("rivya: ", line, "\n") end
  self:redraw(true)   -- events are few (status changes), each one is shown
end

--- A line everybody should see (warnings), above the live line on a terminal.
function Status:note(line)
  if self.mode == "quiet" then return end
  self:clear()
  self.stream:write("rivya: ", line, "\n")
  self:redraw(true)
end

return { new = new }
