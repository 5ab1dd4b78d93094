// Express 4 under the alias express4, typed by Express 5's declarations: the test uses only what both share.
declare module 'express4' {
  import express from 'express';
  export default express;
}
