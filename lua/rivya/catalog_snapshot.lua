--- The model catalog rivya ships, for offline use (rivya.validate,
-- rivya.estimate, rivya.models): GET /api/v1/models objects in the
-- documented shape, transcribed from the model pages. A client uses the
-- live catalog instead (client:models()).
--
-- `rivya_notes` on a reference mode are rivya's own: what the model page
-- says a mode does to a param, as data (a clamp or an ignored param, each
-- reported as a warning). Catalog objects without them are fine.
-- `files_defaults` are the Files API's rules when an upload names no model.
local IMAGE_MIME = { "image/jpeg", "image/png", "image/webp" }

return {
  source = "wan-2-7-video model page, reviewed 2026-05-11",

  files_defaults = {
    image = { max_bytes = 10000000, mime_types = IMAGE_MIME },
    video = { max_bytes = 50000000, mime_types = { "video/mp4", "video/quicktime", "video/webm" } },
    audio = { max_bytes = 10000000,
      mime_types = { "audio/mpeg", "audio/mp4", "audio/wav", "audio/x-wav", "audio/aac", "audio/ogg" } },
  },

  models = {
    {
      id = "wan-2-7-video",
      display_name = "Wan 2.7 Video",
      category = "video",
      runtime = "async_task",
      base_credits = 80,
      billing_type = "FIXED",
      supported_modes = { "text-to-video", "image-to-video", "video-editing" },
      max_prompt_length = 5000,
      reference_media = {
        max_items = 2,
        kinds = { "image", "video" },
        modes = {
          { mode = "image-to-video", counts = { image = { 1, 2 } },
            rivya_notes = { { param = "aspect_ratio", ignored = "the output follows the image" } } },
          { mode = "video-editing", counts = { video = { 1, 1 }, image = { 0, 1 } },
            rivya_notes = { { param = "duration", clamp_max = "10", unit = "s" } } },
        },
        limits = {
          image = { max_bytes = 20000000, mime_types = IMAGE_MIME },
          video = { max_bytes = 95000000, mime_types = { "video/mp4", "video/quicktime" } },
        },
      },
      params = {
        { key = "resolution", type = "select", required = false, default = "720p",
          options = { "720p", "1080p" }, description = "Resolution" },
        { key = "duration", type = "select", required = false, default = "5",
          options = { "5", "10", "15" },
          description = "Text and image runs can use 5, 10, or 15 seconds. Video editing currently tops out at "
            .. "10 seconds, and Rivya normalizes longer selections automatically in that mode." },
        { key = "aspect_ratio", type = "select", required = false, default = "16:9",
          options = { "16:9", "9:16", "1:1", "4:3", "3:4" },
          description = "Text-to-video and video-editing runs use this directly. Image-to-video currently "
            .. "follows the uploaded frame geometry instead of exposing a separate aspect-ratio switch." },
        { key = "negative_prompt", type = "text", required = false, description = "Negative prompt" },
        { key = "prompt_extend", type = "select", required = false, default = "true",
          options = { "true", "false" },
          description = "Controls whether the model rewrites your prompt before generation. Keep it on for "
            .. "convenience, or turn it off when you already have a very precise prompt." },
        { key = "watermark", type = "select", required = false, default = "false",
          options = { "false", "true" }, description = "Watermark" },
        { key = "audio_setting", type = "select", required = false, default = "auto",
          options = { "auto", "origin" },
          description = "Controls how audio is handled in the video-edit path. Auto lets the model decide, "
            .. "while Keep original tries to preserve the source video's audio." },
        { key = "seed", type = "number", required = false, min = 0, max = 2147483647, integer = true,
          description = "Leave it empty for a new random result each time. Reusing the same integer makes it "
            .. "easier to reproduce or fine-tune a previous result. It stays closer only when the prompt and "
            .. "other key settings also remain similar, and it is not a guaranteed 1:1 match." },
      },
      api_status = "available",
      api_input_status = "partial_requires_files",
      supported_api_inputs = { "text", "file" },
      requires_files_api = false,
      requires_upload_for_modes = { "image-to-video", "video-editing" },
      url_input_supported = false,
      file_kinds = { "image", "video" },
      notices = {},
    },
  },
}
