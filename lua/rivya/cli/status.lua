--- rivya.cli.status: the progress display on stderr — one live line on a
-- terminal, plain `rivya: ...` lines otherwise, nothing with --quiet.
-- Results go to stdout, never here.
--
-- On a terminal the live line is redrawn in place ("\r", the line, erase to
-- its end) and never reaches the last column, so it never wraps; the width
-- is asked of the terminal at each redraw (TIOCGWINSZ), so a resized window
-- is followed. Lines that must stay (uploads, creates, saves, warnings,
-- retries) are printed above it.
local core = require "rivya.core"
local util = require "rivya.cli.util"

local clock, printable = util.clock, util.printable

local Status = {}
Status.__index = Status

--- A display on `stream` in `mode` ("tty", "plain" or "quiet"); width() gives
-- the terminal's current width in columns.
local function new(stream, mode, width)
  if type(width) ~= "function" then
    local w = width or 80
    width = function() return w end
  end
  return setmetatable({ stream = stream, mode = mode, shown = false, started = core.now(),
    last = -1, width = width }, Status)
end

function Status:elapsed()
  return clock(core.now() - self.started)
end

-- `line` cut to at most `columns` characters (code points: UTF-8 lead
-- bytes and ASCII), never inside a UTF-8 sequence
local function fit(line, columns)
  if columns < 1 then return "" end
  local count = 0
  for i = 1, #line do
    local b = line:byte(i)
    if b < 128 or b >= 192 then
      count = count + 1
      if count > columns then return line:sub(1, i - 1) end
    end
  end
  return line
end

--- Redraw the live line (terminal only), at most 10 times a second unless forced.
function Status:redraw(force)
  if self.mode ~= "tty" or not self.render then return end
  local t = core.now()
  if not force and t - self.last < 0.1 then return end
  self.last = t
  local line = printable(self.render(self))
  if self.retry and t < self.retry.until_at then
    line = line .. "  " .. printable(self.retry.text(t))
  end
  -- one row short of the last column: a character there would wrap the
  -- cursor on some terminals and "\r" would no longer return to its start
  self.stream:write("\r", fit(line, math.max(self.width() - 1, 1)), "\27[K")
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
  self.retry = nil   -- something happened: the call that was retried got through
  if self.mode == "plain" then self.stream:write("rivya: ", printable(line), "\n") end
  self:redraw(true)   -- events are few (status changes), each one is shown
end

--- A line everybody should see (warnings, uploads, creates, saves): a
-- permanent line, above the live line on a terminal.
function Status:note(line)
  if self.mode == "quiet" then return end
  self:clear()
  self.stream:write("rivya: ", printable(line), "\n")
  self:redraw(true)
end

-- "4 s", "0.5 s"
local function seconds(s)
  if s >= 10 then return ("%d s"):format(math.floor(s + 0.5)) end
  return (("%.1f"):format(s):gsub("%.0$", "")) .. " s"
end

--- The client is about to retry (rivya.new's on_retry): r = {attempt, delay,
-- error}; tries = the most attempts the client makes. Shown on the live line
-- until the retry has had a moment to succeed; a plain line otherwise.
function Status:retrying(r, tries)
  local cause = util.error_line(r.error):gsub("^rivya: ", "")
  local attempt = r.attempt + 1
  local at = core.now() + r.delay
  local of = tries and ("/" .. tries) or ""
  if self.mode == "tty" and self.render then
    -- the cause last: on a narrow terminal it is what gets cut
    self.retry = { until_at = at + 0.5, text = function(t)
      local left = at - t
      return ("retrying (attempt %d%s%s): %s"):format(attempt, of,
        left > 0 and (", next in " .. seconds(left)) or "", cause)
    end }
    self:redraw(true)
  elseif self.mode ~= "quiet" then
    self:clear()
    self.stream:write("rivya: ", printable(("retrying (attempt %d%s in %s): %s"):format(attempt, of,
      seconds(r.delay), cause)), "\n")
  end
end

return { new = new, fit = fit }
