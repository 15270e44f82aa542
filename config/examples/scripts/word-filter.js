// Masks banned words, whatever their case, keeping their length.
const BANNED = ["darn", "heck", "frick"];
const PATTERN = new RegExp(`\\b(${BANNED.join("|")})\\b`, "gi");

export default function (event) {
  return { message: event.message.replace(PATTERN, (word) => "*".repeat(word.length)) };
}
