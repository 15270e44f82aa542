// Who is talking: the publisher's token_id is "<id>:<username>", as a token vended with
// token_id = "{sub}:{name}" carries. Anonymous publishers are not broadcast.
export default function (event) {
  const colon = event.token_id.indexOf(":");
  if (colon < 1) return null;
  return { user: { id: event.token_id.slice(0, colon), name: event.token_id.slice(colon + 1) } };
}
