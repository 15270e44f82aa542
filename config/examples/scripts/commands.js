// Slash commands, answered here; anything else passes through as the message to send.
const HELP = "Commands: /me <action>, /shrug [text], /roll, /help";

export default function (event) {
  const text = String(event.chat.message ?? "").trim();
  if (text === "") return null;
  if (!text.startsWith("/")) return { message: text };
  const [command, ...words] = text.split(/\s+/);
  const rest = words.join(" ");
  switch (command) {
    case "/me":
      return { message: `* ${event.user.name} ${rest}` };
    case "/shrug":
      return { message: `${rest} ¯\\_(ツ)_/¯`.trim() };
    case "/roll":
      // From the event, not Math.random, so a retried event rolls the same.
      return { message: `${event.user.name} rolled ${1 + (event.event_timestamp % 6)}` };
    case "/help":
      return { message: HELP };
    default:
      return null; // unknown commands are not broadcast
  }
}
